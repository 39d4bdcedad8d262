package dev.doppel.jetbrains.plugin

import com.intellij.openapi.project.Project
import com.intellij.openapi.vfs.VirtualFile
import com.jetbrains.jsonSchema.extension.JsonSchemaFileProvider
import com.jetbrains.jsonSchema.extension.JsonSchemaProviderFactory
import com.jetbrains.jsonSchema.extension.SchemaType

/**
 * Completion and validation of the config files (json, yaml, yml under .doppel/; json under .mirrord/) with doppel's
 * schema (schema/doppel.schema.json, copied into the plugin's resources by the Gradle build;
 * the same document doppel/getSchema returns). YAML files get it through the YAML plugin's JSON
 * schema support.
 */
class DoppelJsonSchemaProviderFactory : JsonSchemaProviderFactory {
    override fun getProviders(project: Project): List<JsonSchemaFileProvider> = listOf(Provider)

    object Provider : JsonSchemaFileProvider {
        override fun isAvailable(file: VirtualFile): Boolean = isConfigFile(file.parent?.name, file.extension)
        override fun getName(): String = "doppel"
        override fun getSchemaFile(): VirtualFile? = JsonSchemaProviderFactory.getResourceFile(DoppelJsonSchemaProviderFactory::class.java, SCHEMA)
        override fun getSchemaType(): SchemaType = SchemaType.embeddedSchema
        override fun getRemoteSource(): String? = null
        override fun getPresentableName(): String = "doppel configuration"
    }

    companion object {
        const val SCHEMA = "/schema/doppel.schema.json"

        /** The files the helper's watcher watches (helper/ide/watch.go). */
        fun isConfigFile(dir: String?, ext: String?): Boolean = when (dir) {
            ".doppel" -> ext in setOf("json", "yaml", "yml")
            ".mirrord" -> ext == "json"
            else -> false
        }
    }
}
